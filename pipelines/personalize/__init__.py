"""The personalize stage: consented feedback as preference pairs, a DPO step on the served lineage."""
