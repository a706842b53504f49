"""What a run shows: plots, the pipeline dashboard, experiment trackers, Hub pushes."""
