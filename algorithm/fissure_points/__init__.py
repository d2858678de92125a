"""User points on the fissures (issue 32): ``reading`` (Slicer markups, grand-challenge points,
CSV), ``fit`` (the fissure step with the marked fissures through their points), ``export`` (the
surfaces as Slicer markups) and ``refine`` (the ``refine CT MASK`` command). docs/outputs.md,
"Fissure points"; docs/design.md, "Fissure points"."""
