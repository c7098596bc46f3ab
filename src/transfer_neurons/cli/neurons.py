"""`transfer-neurons neurons import | export`: neuron sets to and from the paper's pairs and LAPE's masks."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import TransferNeuronsError
from ..models.adapters import ADAPTERS
from ..neuron_sets import (
    PICKLE_SUFFIXES, TORCH_SUFFIXES, NeuronSet, neuron_module, read_lape, read_neuron_set, read_pairs_pickle,
    write_lape, write_neuron_set, write_pairs,
)
from .common import positive_int

FORMATS = ("pairs-json", "pairs-pickle", "lape", "neurons-json")


def file_format(path: Path, given: str | None) -> str:
    """The exchange format of a file: --format, else its suffix (.pkl pairs-pickle, .pt lape, .json pairs/neurons JSON)."""
    if given:
        return given
    suffix = path.suffix.lower()
    return "pairs-pickle" if suffix in PICKLE_SUFFIXES else "lape" if suffix in TORCH_SUFFIXES else "pairs-json"


def lape_choice(args: argparse.Namespace, count: int, source: Path) -> int:
    """Which language of a LAPE file to import: --lape-index, or --lang's place in --lape-langs."""
    if args.lape_index is not None:
        index = args.lape_index
    elif args.lape_langs:
        langs = [code.strip() for code in args.lape_langs.split(",")]
        if len(langs) != count:
            raise TransferNeuronsError(f"--lape-langs names {len(langs)} languages but {source} holds {count}")
        if args.lang not in langs:
            raise TransferNeuronsError(f"--lang {args.lang!r} is not one of --lape-langs {args.lape_langs}")
        index = langs.index(args.lang)
    elif count == 1:
        index = 0
    else:
        raise TransferNeuronsError(f"{source} holds {count} languages: choose one with --lape-index K "
                                   "or --lape-langs CODES --lang CODE (LAPE's order, e.g. en,zh,fr,es,vi,id,ja)")
    if not 0 <= index < count:
        raise TransferNeuronsError(f"--lape-index {index} is outside the {count} languages of {source}")
    return index


def run_import(args: argparse.Namespace) -> int:
    source = Path(args.source)
    fmt = file_format(source, args.format)
    if fmt == "lape":
        sets = read_lape(source)
        neurons = sets[lape_choice(args, len(sets), source)]
    elif fmt == "pairs-pickle":
        neurons = read_pairs_pickle(source)
    else:
        neurons = read_neuron_set(source).neurons
    neurons = neurons + np.array([args.layer_offset, 0])
    if len(neurons) and neurons[:, 0].min() < 0:
        raise TransferNeuronsError(f"--layer-offset {args.layer_offset} makes layer {neurons[:, 0].min()} negative")
    neurons = neurons[: args.top_k]
    model = {key: value for key, value in (("name", args.model_name), ("revision", args.revision), ("type", args.model_type))
             if value is not None}
    module = neuron_module(ADAPTERS[args.model_type]) if args.model_type else None
    ns = NeuronSet(neurons, model=model, module=module, neuron_type=args.neuron_type, language=args.lang, source=str(source))
    write_neuron_set(ns, args.out_file)
    print(f"imported {len(neurons)} neurons ({fmt}) from {source} in layers "
          f"{sorted(set(neurons[:, 0].tolist())) if len(neurons) else []}; wrote {args.out_file}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    out = Path(args.out_file)
    fmt = file_format(out, args.format)
    sets = [read_neuron_set(source) for source in args.sources]
    if fmt != "lape" and len(sets) != 1:
        raise TransferNeuronsError(f"--format {fmt} writes one neuron set; {len(sets)} were given (only lape holds several)")
    for ns in sets:
        ns.neurons = ns.neurons[: args.top_k]
        ns.scores = None if ns.scores is None else ns.scores[: args.top_k]
    if fmt == "lape":
        recorded = {ns.model.get("num_layers") for ns in sets} - {None}
        num_layers = args.num_layers or (recorded.pop() if len(recorded) == 1 else None)
        if num_layers is None:
            raise TransferNeuronsError("give --num-layers: the sources do not record one model's layer count")
        write_lape([ns.neurons for ns in sets], num_layers, out)
    elif fmt == "neurons-json":
        write_neuron_set(sets[0], out)
    else:
        write_pairs(sets[0].neurons, out, pickled=fmt == "pairs-pickle")
    print(f"exported {', '.join(str(len(ns.neurons)) for ns in sets)} neurons ({fmt}) to {out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("neurons", help="import or export neuron sets (the paper's pairs, LAPE masks)",
                                   description="Convert neuron sets between this tool's neurons.json (schema 2, "
                                   "docs/neurons.md) and the formats of published sets. Pickles are read through an "
                                   "unpickler that admits only lists, tuples and ints; tensors only with "
                                   "torch.load(weights_only=True).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    imp = actions.add_parser("import", help="a pairs JSON/pickle or LAPE mask -> neurons.json",
                             description="Read [(layer, neuron), ...] (JSON or pickle, ranked) or a LAPE activation "
                             "mask (.pt: per language, per layer, a LongTensor of neuron indices) and write a "
                             "neurons.json that every command's --neurons accepts.")
    imp.add_argument("source", help="the file to read (.json, .pkl/.pickle, .pt/.pth)")
    imp.add_argument("--out", dest="out_file", required=True, help="the neurons.json to write")
    imp.add_argument("--format", choices=FORMATS[:3], help="the source's format (default: from its suffix)")
    imp.add_argument("--lape-index", type=int, help="which language of a LAPE file (0-based, in the file's order)")
    imp.add_argument("--lape-langs", help="the LAPE file's languages in order, e.g. en,zh,fr,es,vi,id,ja (then --lang)")
    imp.add_argument("--lang", help="the language of the set (recorded; picks it from --lape-langs)")
    imp.add_argument("--type", dest="neuron_type", choices=("type1", "type2"), help="the set's type (recorded)")
    imp.add_argument("--layer-offset", type=int, default=0,
                     help="add to every layer index, e.g. -1 for 1-based layers or 20 for layers counted from the "
                     "first candidate layer (default 0: layers are 0-based decoder layers)")
    imp.add_argument("--top-k", type=positive_int, help="keep the first K entries (e.g. of a full ranking)")
    imp.add_argument("--model", dest="model_name", help="the model the set indexes (hub id or name; recorded)")
    imp.add_argument("--revision", help="that model's revision (recorded)")
    imp.add_argument("--model-type", choices=sorted(ADAPTERS),
                     help="its architecture: records the neuron's module and nnsight path (TransformerLens names need none)")
    imp.set_defaults(func=run_import)

    exp = actions.add_parser("export", help="neurons.json / detection folders -> pairs JSON/pickle or a LAPE mask",
                             description="Write neuron sets for other tools: pairs-json ([[layer, neuron], ...]), "
                             "pairs-pickle (the paper's list of tuples), lape (one language per source, in the order "
                             "given) or neurons-json (schema 2, e.g. to upgrade a version-1 file).")
    exp.add_argument("sources", nargs="+", help="detection folders or neuron files (several only for lape)")
    exp.add_argument("--out", dest="out_file", required=True, help="the file to write (.json, .pkl, .pt)")
    exp.add_argument("--format", choices=FORMATS, help="the output format (default: from --out's suffix)")
    exp.add_argument("--top-k", type=positive_int, help="export the first K neurons of each set")
    exp.add_argument("--num-layers", type=positive_int,
                     help="layers of the model (lape; default: recorded in the sources' neurons.json)")
    exp.set_defaults(func=run_export)
