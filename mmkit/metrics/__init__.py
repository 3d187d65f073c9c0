"""Metrics: classification (accuracy, macro-F1, confusion) and retrieval (recall@K)."""
