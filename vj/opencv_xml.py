"""OpenCV Haar cascade XML: import (new 4.x format and the old 1.x format) and export.

The new format (``<cascade type_id="opencv-cascade-classifier">``) holds stages of
weak classifiers, each ``internalNodes`` (groups of ``left right featureIdx
threshold``) and ``leafValues``, plus a shared ``features`` list of weighted
rectangles. The old format (``type_id="opencv-haar-classifier"``) stores each
tree's features inline; OpenCV 4 converts it to the new layout when loading, and
so do we, in the same order.

Numbers are read as doubles and narrowed to float32 exactly as OpenCV's
``FileStorage`` + ``(float)`` cast do, so a loaded cascade evaluates bit-for-bit
like ``cv2.CascadeClassifier``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .cascade import Cascade
from .features import MAX_RECTS, HaarFeatureSet

__all__ = ["read_xml", "write_xml", "CascadeFormatError"]


class CascadeFormatError(ValueError):
    """A cascade file is corrupt or not in a format this library reads."""


def _numbers(elem: ET.Element | None, what: str, path: str) -> list[str]:
    if elem is None or elem.text is None:
        raise CascadeFormatError(f"{path}: missing <{what}>")
    return elem.text.split()


def _items(elem: ET.Element | None) -> list[ET.Element]:
    return [] if elem is None else [c for c in elem if c.tag == "_"]


def _f32(text: str) -> np.float32:
    return np.float32(float(text))


def read_xml(path: str | os.PathLike) -> Cascade:
    """Read an OpenCV Haar cascade XML file.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Cascade

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CascadeFormatError
        If the file is not an OpenCV Haar cascade (e.g. an LBP or HOG cascade,
        or a damaged file); the message names the file and the problem.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cascade file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise CascadeFormatError(f"{path}: not a readable XML file ({exc})") from None
    nodes = [c for c in root if isinstance(c.tag, str)]
    if root.tag != "opencv_storage" or not nodes:
        raise CascadeFormatError(f"{path}: not an OpenCV storage file (root <{root.tag}>)")
    top = nodes[0]
    try:
        if top.find("stageType") is not None:
            cascade = _read_new(top, path)
        elif top.find("size") is not None and top.find("stages") is not None:
            cascade = _read_old(top, path)
        else:
            raise CascadeFormatError(f"{path}: <{top.tag}> is not a Haar cascade")
    except CascadeFormatError:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        raise CascadeFormatError(f"{path}: damaged cascade ({exc})") from None
    cascade.metadata.setdefault("name", Path(path).stem)
    cascade.metadata.setdefault("source", "opencv-xml")
    return cascade


def _read_new(top: ET.Element, path: str) -> Cascade:
    stage_type = (top.findtext("stageType") or "").strip()
    feature_type = (top.findtext("featureType") or "").strip()
    if stage_type != "BOOST":
        raise CascadeFormatError(f"{path}: stageType {stage_type!r} is not supported (BOOST)")
    if feature_type != "HAAR":
        raise CascadeFormatError(
            f"{path}: featureType {feature_type!r} is not supported (only HAAR cascades)"
        )
    width = int(_numbers(top.find("width"), "width", path)[0])
    height = int(_numbers(top.find("height"), "height", path)[0])
    if width <= 0 or height <= 0:
        raise CascadeFormatError(f"{path}: bad window size {width}x{height}")
    fparams = top.find("featureParams")
    if fparams is not None and int(fparams.findtext("maxCatCount", "0").strip() or 0) > 0:
        raise CascadeFormatError(f"{path}: categorical (LBP-style) trees are not supported")

    features = []
    for f in _items(top.find("features")):
        rects = []
        for r in _items(f.find("rects")):
            v = _numbers(r, "rects/_", path)
            rects.append((int(v[0]), int(v[1]), int(v[2]), int(v[3]), _f32(v[4])))
        tilted = int((f.findtext("tilted") or "0").strip() or 0) != 0
        features.append((rects, tilted))
    if not features:
        raise CascadeFormatError(f"{path}: no <features>")

    stage_thr, stage_trees, tree_nodes = [], [], []
    nf, nthr, nl, nr, leaves = [], [], [], [], []
    stages = _items(top.find("stages"))
    if not stages:
        raise CascadeFormatError(f"{path}: no <stages>")
    for s in stages:
        stage_thr.append(_f32(_numbers(s.find("stageThreshold"), "stageThreshold", path)[0]))
        weak = _items(s.find("weakClassifiers"))
        if not weak:
            raise CascadeFormatError(f"{path}: a stage has no weak classifiers")
        stage_trees.append(len(weak))
        for w in weak:
            inner = _numbers(w.find("internalNodes"), "internalNodes", path)
            leaf = _numbers(w.find("leafValues"), "leafValues", path)
            if len(inner) % 4 or not inner:
                raise CascadeFormatError(f"{path}: internalNodes must come in groups of 4")
            n = len(inner) // 4
            if len(leaf) != n + 1:
                raise CascadeFormatError(
                    f"{path}: a tree with {n} nodes needs {n + 1} leaf values, got {len(leaf)}"
                )
            tree_nodes.append(n)
            for k in range(n):
                nl.append(int(inner[4 * k]))
                nr.append(int(inner[4 * k + 1]))
                nf.append(int(inner[4 * k + 2]))
                nthr.append(_f32(inner[4 * k + 3]))
            leaves.extend(_f32(v) for v in leaf)
    return _assemble((width, height), features, nf, nthr, nl, nr, tree_nodes, leaves,
                     stage_trees, stage_thr, path)


def _read_old(top: ET.Element, path: str) -> Cascade:
    size = _numbers(top.find("size"), "size", path)
    width, height = int(size[0]), int(size[1])
    features, nf, nthr, nl, nr, leaves = [], [], [], [], [], []
    stage_thr, stage_trees, tree_nodes = [], [], []
    for s in _items(top.find("stages")):
        trees = _items(s.find("trees"))
        if not trees:
            raise CascadeFormatError(f"{path}: a stage has no trees")
        stage_trees.append(len(trees))
        stage_thr.append(_f32(_numbers(s.find("stage_threshold"), "stage_threshold", path)[0]))
        for t in trees:
            tnodes = _items(t)
            tree_nodes.append(len(tnodes))
            # Leaves are numbered in node order, left before right (OpenCV's converter).
            tree_leaves = []
            for node in tnodes:
                feat = node.find("feature")
                rects = []
                for r in _items(feat.find("rects") if feat is not None else None):
                    v = _numbers(r, "rects/_", path)
                    rects.append((int(v[0]), int(v[1]), int(v[2]), int(v[3]), _f32(v[4])))
                tilted = int((feat.findtext("tilted") or "0").strip() or 0) != 0
                nf.append(len(features))
                features.append((rects, tilted))
                nthr.append(_f32(_numbers(node.find("threshold"), "threshold", path)[0]))
                for side, out in (("left", nl), ("right", nr)):
                    child = node.find(f"{side}_node")
                    if child is not None:
                        out.append(int(child.text))
                    else:
                        out.append(-len(tree_leaves))
                        val = _numbers(node.find(f"{side}_val"), f"{side}_val", path)[0]
                        tree_leaves.append(_f32(val))
            if len(tree_leaves) != len(tnodes) + 1:
                raise CascadeFormatError(f"{path}: a tree is not a binary tree")
            leaves.extend(tree_leaves)
    return _assemble((width, height), features, nf, nthr, nl, nr, tree_nodes, leaves,
                     stage_trees, stage_thr, path)


def _assemble(window, features, nf, nthr, nl, nr, tree_nodes, leaves, stage_trees,
              stage_thr, path) -> Cascade:
    n = len(features)
    rects = np.zeros((n, MAX_RECTS, 4), np.int32)
    weights = np.zeros((n, MAX_RECTS), np.float32)
    tilted = np.zeros(n, np.bool_)
    for i, (rs, t) in enumerate(features):
        if not 1 <= len(rs) <= MAX_RECTS:
            raise CascadeFormatError(f"{path}: feature {i} has {len(rs)} rectangles (1..3)")
        for k, (x, y, w, h, wt) in enumerate(rs):
            rects[i, k] = (x, y, w, h)
            weights[i, k] = wt
        tilted[i] = t
    try:
        feats = HaarFeatureSet(window, rects, weights, tilted)
        return Cascade(
            features=feats,
            node_feature=np.array(nf, np.int32),
            node_threshold=np.array(nthr, np.float32),
            node_left=np.array(nl, np.int32),
            node_right=np.array(nr, np.int32),
            tree_nodes=np.array(tree_nodes, np.int32),
            leaf_values=np.array(leaves, np.float32),
            stage_trees=np.array(stage_trees, np.int32),
            stage_threshold=np.array(stage_thr, np.float32),
            metadata={},
        )
    except ValueError as exc:
        raise CascadeFormatError(f"{path}: inconsistent cascade ({exc})") from None


def _fmt(v: float) -> str:
    # 9 significant digits round-trip any float32 through OpenCV's double parser.
    return f"{float(v):.9g}"


def write_xml(cascade: Cascade, path: str | os.PathLike) -> None:
    """Write ``cascade`` as an OpenCV 4 Haar cascade XML (atomically).

    ``cv2.CascadeClassifier`` loads the file and detects exactly what this
    library detects with the same cascade.
    """
    c = cascade
    w, h = c.window
    out = ['<?xml version="1.0"?>', "<opencv_storage>",
           '<cascade type_id="opencv-cascade-classifier">',
           "  <stageType>BOOST</stageType>", "  <featureType>HAAR</featureType>",
           f"  <height>{h}</height>", f"  <width>{w}</width>",
           "  <stageParams>",
           f"    <maxWeakCount>{int(c.stage_trees.max())}</maxWeakCount></stageParams>",
           "  <featureParams>", "    <maxCatCount>0</maxCatCount></featureParams>",
           f"  <stageNum>{c.n_stages}</stageNum>", "  <stages>"]
    node_start, leaf_start, tree_start = c.tree_node_start, c.tree_leaf_start, c.stage_tree_start
    for s in range(c.n_stages):
        out += ["    <_>", f"      <maxWeakCount>{int(c.stage_trees[s])}</maxWeakCount>",
                f"      <stageThreshold>{_fmt(c.stage_threshold[s])}</stageThreshold>",
                "      <weakClassifiers>"]
        for t in range(tree_start[s], tree_start[s] + c.stage_trees[s]):
            k0, n, l0 = node_start[t], c.tree_nodes[t], leaf_start[t]
            nodes = " ".join(
                f"{c.node_left[k]} {c.node_right[k]} {c.node_feature[k]} "
                f"{_fmt(c.node_threshold[k])}" for k in range(k0, k0 + n)
            )
            leaves = " ".join(_fmt(v) for v in c.leaf_values[l0:l0 + n + 1])
            out += ["        <_>", f"          <internalNodes>{nodes}</internalNodes>",
                    f"          <leafValues>{leaves}</leafValues></_>"]
        out += ["      </weakClassifiers></_>"]
    out += ["  </stages>", "  <features>"]
    f = c.features
    for i in range(len(f)):
        out.append("    <_>")
        out.append("      <rects>")
        for k in range(MAX_RECTS):
            if f.weights[i, k] == 0:
                continue
            x, y, rw, rh = (int(v) for v in f.rects[i, k])
            out.append(f"        <_>{x} {y} {rw} {rh} {_fmt(f.weights[i, k])}</_>")
        out.append("      </rects>")
        out.append(f"      <tilted>{int(f.tilted[i])}</tilted></_>")
    out += ["  </features>", "</cascade>", "</opencv_storage>", ""]
    atomic_write_text(path, "\n".join(out))
