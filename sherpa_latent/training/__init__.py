"""What makes a network: response library, simulation, shards, training, recipe, evaluation.

Nothing at the top level of :mod:`sherpa_latent` imports this subpackage, except the
``sherpa-latent train`` and ``evaluate`` commands, lazily: encoding a spectrum never loads
the training stack.
"""
