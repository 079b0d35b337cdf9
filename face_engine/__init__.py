"""Pure-Python face engine: decode, detect, align, embed, index. Never imports Django."""
