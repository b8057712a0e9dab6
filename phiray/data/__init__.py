"""Reusable data blocks (plain Python, composed by the stages): readers, MinHash, n-grams, embedders,
annotators, scorers, packing."""
