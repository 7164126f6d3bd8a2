"""`splat4d export FORMAT ...`: one command group for every format a scene or a run folder can be written as.

A format is an argument dataclass (its docstring is the format's ``--help``) and a function in ``FORMATS``; adding
one needs no other change. ``read_scene`` reads every scene format we write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable

import tyro

from splat4d.mesh import MeshConfig
from splat4d.types import GaussianScene

SCENE_SUFFIXES = (".ply", ".splat", ".spz")


def read_scene(path: Path) -> GaussianScene:
    """A Gaussian scene from any format splat4d writes: INRIA .ply, PlayCanvas compressed .ply (told apart by the
    header's element names), .splat and .spz (by suffix); a clear ``ValueError`` for anything else."""
    from splat4d.io.compressed_ply import is_compressed_ply, read_compressed_ply
    from splat4d.io.ply import read_ply, read_splat
    from splat4d.io.spz import read_spz

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scene not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return read_compressed_ply(path) if is_compressed_ply(path) else read_ply(path)
    readers = {".splat": read_splat, ".spz": read_spz}
    if suffix not in readers:
        raise ValueError(f"{path}: unknown scene format {path.suffix!r}; splat4d reads {', '.join(SCENE_SUFFIXES)} "
                         "(.ply: INRIA 3DGS or PlayCanvas compressed)")
    return readers[suffix](path)


@dataclass
class ConvertArgs:
    """A scene file (.ply, compressed .ply, .splat or .spz) written in another scene format."""

    scene: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="SCENE")]]
    """Input scene (.ply, PlayCanvas compressed .ply, .splat or .spz)."""
    out: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT")]]
    """Output file."""


@dataclass
class ExportPlyArgs(ConvertArgs):
    """A scene as an INRIA 3DGS .ply (what gsplat, nerfstudio, SuperSplat and most viewers read).

    Example: splat4d export ply runs/photo/scene.splat scene.ply
    """


@dataclass
class ExportSplatArgs(ConvertArgs):
    """A scene as an antimatter15 .splat (32 bytes a Gaussian, degree-0 colour; web viewers).

    Example: splat4d export splat runs/photo/scene.ply scene.splat
    """


@dataclass
class ExportSpzArgs(ConvertArgs):
    """A scene as a Niantic .spz v3 (gzip; ~10 bytes a degree-0 Gaussian; SuperSplat, Spark, three.js).

    Read by SuperSplat, Spark, three.js, Babylon.js and GaussianSplats3D. Axes become .spz's RUB (y up); reading
    converts back. Lossy: 24-bit positions, 8-bit colour/opacity/scale, 4-byte rotations, 4-5 bit SH
    (docs/exports.md gives the error bounds).

    Example: splat4d export spz runs/photo/scene.ply scene.spz
    """


@dataclass
class ExportCompressedPlyArgs(ConvertArgs):
    """A scene as a PlayCanvas/SuperSplat compressed .ply (16 bytes a Gaussian, 8-bit SH).

    Chunks of 256 Gaussians, each with its own value ranges; same axes as the .ply. Lossy (docs/exports.md gives
    the error bounds).

    Example: splat4d export compressed-ply runs/photo/scene.ply scene.compressed.ply
    """


def converter(writer: str) -> Callable[[ConvertArgs], Path]:
    """The export function that reads any scene and writes it with ``writer`` ("module:function")."""

    def export(args: ConvertArgs) -> Path:
        import importlib

        module, name = writer.split(":")
        scene = read_scene(args.scene)
        getattr(importlib.import_module(module), name)(scene, args.out)
        print(f"wrote {args.out} ({len(scene)} Gaussians, {args.out.stat().st_size / 1e6:.2f} MB)")
        return args.out

    return export


@dataclass
class ExportNerfstudioArgs:
    """A nerfstudio dataset (transforms.json, images, masks, sparse_pc.ply) from a `splat4d run` folder; with --model
    also a splatfacto checkpoint + config.yml of the run's scene for nerfstudio's viewer.

    Example: splat4d export nerfstudio runs/photo runs/photo_ns --model && ns-viewer --load-config
    runs/photo_ns/outputs/photo_ns/splat4d/export/config.yml   (or: ns-train splat4d --data runs/photo_ns)
    """

    run_dir: tyro.conf.Positional[Path]
    """Output folder of `splat4d run`."""
    out_dir: tyro.conf.Positional[Path]
    """Folder to write the nerfstudio dataset into."""
    model: bool = False
    """Also write OUT_DIR/outputs/NAME/splat4d/export/config.yml + nerfstudio_models/ holding the run's scene.ply in
    splatfacto's layout (needs nerfstudio importable: it lives in its own environment, see the README)."""


def export_nerfstudio(args: ExportNerfstudioArgs) -> Path:
    from splat4d.nerfstudio.export import export_nerfstudio as write_dataset

    if args.model:  # check before writing anything
        try:
            import nerfstudio  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "--model writes a nerfstudio config.yml and needs nerfstudio importable; it pins gsplat 1.4.0 / viser "
                "0.2.7 and needs torchvision, so install it in its own environment (README: nerfstudio) and run "
                "this command there, or leave out --model") from None
        if not (args.run_dir / "scene.ply").is_file():
            raise FileNotFoundError(f"{args.run_dir / 'scene.ply'} not found: is {args.run_dir} a `splat4d run` folder?")
    path = write_dataset(args.run_dir, args.out_dir)
    print(f"wrote {path}")
    if args.model:
        from splat4d.io.ply import read_ply
        from splat4d.nerfstudio.method import write_nerfstudio_model

        config = write_nerfstudio_model(read_ply(args.run_dir / "scene.ply"), args.out_dir)
        print(f"wrote {config}\nview it: ns-viewer --load-config {config}")
    return path


@dataclass
class ExportMeshArgs:
    """A coloured triangle mesh (.glb, .obj or .ply) of a scene or a `splat4d run` folder.

    Depth and colour rendered from many views around it, fused in a TSDF, marching cubes, small islands removed;
    written y-up (docs/exports.md).

    Example: splat4d export mesh runs/photo mesh.glb   (or a scene file: splat4d export mesh scene.spz mesh.obj)
    """

    source: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="RUN_OR_SCENE")]]
    """A scene file (.ply, compressed .ply, .splat, .spz) or a `splat4d run` folder (its scene.ply, and its views'
    cameras from views/cameras.json)."""
    out: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT")]]
    """Output mesh: .glb (glTF binary), .obj or .ply, with vertex colours."""
    mesh: tyro.conf.OmitArgPrefixes[MeshConfig] = field(default_factory=MeshConfig)
    """Meshing settings (sizes default to fractions of the scene's bounds)."""


def export_mesh(args: ExportMeshArgs) -> Path:
    from splat4d.mesh import MESH_SUFFIXES, load_source, run_cameras, scene_to_mesh, write_mesh

    if args.out.suffix.lower() not in MESH_SUFFIXES:  # check before the slow part
        raise ValueError(f"{args.out}: unknown mesh format {args.out.suffix!r}; "
                         f"write one of {', '.join(MESH_SUFFIXES)}")
    scene, run_dir = load_source(args.source)
    extra = run_cameras(run_dir, args.mesh.resolution) if run_dir is not None and args.mesh.use_run_cameras else None
    mesh = scene_to_mesh(scene, args.mesh, extra_cameras=extra)
    write_mesh(mesh, args.out, args.mesh.axes)
    print(f"wrote {args.out} ({len(mesh.vertices)} vertices, {len(mesh.faces)} triangles; voxel "
          f"{mesh.info['voxel_size']:.4g}, {mesh.info['views']} views)")
    return args.out


FORMATS: dict[str, tuple[type, Callable]] = {
    "ply": (ExportPlyArgs, converter("splat4d.io.ply:write_ply")),
    "splat": (ExportSplatArgs, converter("splat4d.io.ply:write_splat")),
    "spz": (ExportSpzArgs, converter("splat4d.io.spz:write_spz")),
    "compressed-ply": (ExportCompressedPlyArgs, converter("splat4d.io.compressed_ply:write_compressed_ply")),
    "mesh": (ExportMeshArgs, export_mesh),
    "nerfstudio": (ExportNerfstudioArgs, export_nerfstudio),
}
