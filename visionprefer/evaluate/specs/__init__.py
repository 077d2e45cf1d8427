"""The built-in evaluators' registry entries (:mod:`visionprefer.evaluate.registry`), one module each:
options, runner, report, leaderboard entries, checks and rows. Light to import: each runs its evaluator
module (``visionprefer.evaluate.<name>``) only when called."""
