"""Write the bundled demo scene, splat4d/assets/example_scene.ply (deterministic)."""

from pathlib import Path

from splat4d.synthetic import toy_scene
from splat4d.io.ply import write_ply

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "splat4d" / "assets" / "example_scene.ply"
    scene = toy_scene()
    write_ply(scene, out)
    print(f"wrote {out} ({len(scene)} Gaussians, {out.stat().st_size / 1e6:.2f} MB)")
