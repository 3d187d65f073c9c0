"""prepare / train / eval / infer / sim as plain functions, one module per modality."""
