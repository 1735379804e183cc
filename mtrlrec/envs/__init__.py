"""Pure JAX environments: bandits, contextual bandits, pricing, ads, slates, logged data."""
