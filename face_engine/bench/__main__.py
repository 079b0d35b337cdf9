from face_engine.bench.pipeline import main

if __name__ == "__main__":
    main()
