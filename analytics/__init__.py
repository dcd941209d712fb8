"""Analytics: KPIs, SPC and model training; imports twin and historian."""
