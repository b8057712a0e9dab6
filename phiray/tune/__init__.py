"""Data-mixture sweeps with Ray Tune: search space on the simplex (space), the trial (trainable), and the
outputs (table, plot, best.yaml). The ``sweep`` stage (phiray/stages/sweep.py) wires them to a Tuner."""
