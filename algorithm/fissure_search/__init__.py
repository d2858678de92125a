"""Global fissure search (issue 30): hypotheses over each fissure's anatomical range, an anatomical
prior choosing among them (search.py, hypotheses.py, prior.py; docs/design.md, "Global fissure search")."""

from algorithm.fissure_search.search import GlobalFit, SearchSettings, global_section, search_fissures

__all__ = ["GlobalFit", "SearchSettings", "global_section", "search_fissures"]
