"""Text classifiers: tokenised inputs, discrete attacks and embedding-space hardening."""
