"""The default catalog: recipes that train and register the models CONTRACT.md lists."""
