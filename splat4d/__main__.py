from splat4d.cli import entrypoint

entrypoint()
