"""Raw tracks in, validated tracks and observation/prediction windows out."""
