"""recflow: recommender training (training/, curriculum/), evaluation, run folders (runs/), serving, and the commands (cli/)."""
