"""HTTP serving of a trained run: one model loaded once, concurrent requests answered in batches."""
