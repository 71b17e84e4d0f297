"""Model cards: documentation of a model package version, validated, versioned, diffed and exported."""
