"""`make loadtest`: the production server under concurrent recognising and enrolling clients."""
