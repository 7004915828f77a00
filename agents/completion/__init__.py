"""The completion path: fill-in-the-middle prompts, the generator agent, post-processing, caches."""
