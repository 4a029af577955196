"""The `bench_score` evaluate metric (bench_score.py); a package only so wheels ship it."""
