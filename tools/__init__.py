"""Developer tools that are neither tests nor benchmarks; the deploy package leaves them out."""
