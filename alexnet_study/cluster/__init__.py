"""Beyond one process: DDP launch modes and which process writes, and SLURM requeue."""
