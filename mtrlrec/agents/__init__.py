"""Pure JAX agents: bandits, linear and neural bandits, deep RL, slates, meta-RL."""
