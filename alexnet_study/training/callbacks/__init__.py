"""Lightning callbacks a run uses: the epoch recorder and dataset views, the divergence guard,
checkpoints and resume, and the provenance record."""
