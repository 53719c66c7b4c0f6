"""The base layer: errors, paths, output folders, file formats between stages, HTML report helpers,
model presets and the sample data. It imports nothing else of ours; every other package may import it."""
