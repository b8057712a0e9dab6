"""phi models: shapes -> PhiConfig, tokenizers, growth by weight reuse, HF save/load."""
