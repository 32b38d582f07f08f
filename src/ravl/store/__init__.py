"""Storage: SQLite (items, captions, vectors) and FAISS index files derived from it."""
