"""Dataset-card templates (Jinja, YAML header) shipped with wmdd_hf as the ``wmdd_hf.model_cards`` package."""
