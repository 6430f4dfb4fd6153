"""The Keras callbacks: each a small subclass of `base.ProbeCallback` (or `SnapshotCallback`)
that says what it needs from the shared pass and how its pictures are named and drawn."""
