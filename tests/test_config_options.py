"""A config dataclass makes its command's options and reads YAML config files (curation.configs,
app.cli_options): every field is an option with its help and default, nested configs flatten,
``--config FILE.yaml`` gives values the command line overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from app.cli import cli
from app.cli_options import ConfigSettings, config_command
from curation.agreement import AgreementConfig
from curation.configs import build_config, config_fields, load_config_file
from curation.coverage import CoverageConfig
from curation.decontam import DecontamConfig
from curation.embeddings import EncoderConfig
from curation.errors import CuratorError
from curation.records import Instance
from routing.features import FeatureConfig
from routing.judges import Judge
from routing.router import RouteConfig
from routing.selective import SelectiveConfig
from routing.sweeps import SweepConfig
from training import jobs
from training.config import TRAINER_KINDS, config_class

COMMANDS = [
    (("features",), FeatureConfig, ()),
    (("sweep",), SweepConfig, ()),
    (("route",), RouteConfig, ()),
    (("judge",), Judge, ()),
    (("agreement",), AgreementConfig, ()),
    (("decontam",), DecontamConfig, ("action",)),
    (("coverage",), CoverageConfig, ()),
    (("calibrate",), SelectiveConfig, ()),
    *[(("train", kind), config_class(kind), ()) for kind in TRAINER_KINDS],
]


def _command(path: tuple[str, ...]):
    command = typer.main.get_command(cli)
    for name in path:
        command = command.commands[name]
    return command


def _options(command) -> dict[str, object]:
    """Each of a click command's option names (``--x`` and ``--no-x`` alike) to its option."""
    return {name: p for p in command.params for name in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize(("path", "config_cls", "exclude"), COMMANDS, ids=lambda v: str(v))
def test_every_config_field_is_an_option_of_its_command_with_its_help_and_default(
    path, config_cls, exclude
):
    options = _options(_command(path))
    assert "--config" in options
    for spec in config_fields(config_cls, exclude=exclude):
        names = spec.flag.split("/")
        assert all(n in options for n in names), f"curator {' '.join(path)} lacks {spec.flag}"
        option = options[names[0]]
        assert option.help == spec.help and spec.help, f"{spec.name}: help {option.help!r}"
        default = list(spec.default) or None if spec.kind is tuple else spec.default
        assert option.default == default, f"{spec.name}: default {option.default!r}"


def test_nested_configs_flatten_into_their_parents_fields_and_build_back():
    """FeatureConfig.encoder is an EncoderConfig: its fields are FeatureConfig's options."""
    specs = {f.name: f for f in config_fields(FeatureConfig)}
    assert {"encoder", "max_length", "batch_size", "device", "tagger"} <= set(specs)
    assert specs["device"].path == ("encoder", "device") and specs["tagger"].path == ("tagger",)
    assert specs["encoder"].kind is str  # the encoder's model, not the nested config
    config = build_config(FeatureConfig, {"device": "cuda", "tagger": "none"})
    assert config.encoder == EncoderConfig(device="cuda") and config.tagger == "none"
    sweep = build_config(SweepConfig, {"judge": "j1", "representation": "minilm"})
    assert (sweep.labels.judge, sweep.labels.slight, sweep.probe.representation) == (
        "j1",
        "collapse",
        "minilm",
    )


@dataclass
class Inner:
    seed: int = field(default=0, metadata={"help": "inner seed"})


@dataclass
class Outer:
    seed: int = field(default=1, metadata={"help": "outer seed"})
    inner: Inner = field(default_factory=Inner)


def test_nested_fields_that_share_a_name_are_refused_at_definition():
    with pytest.raises(TypeError, match="share the field"):
        config_fields(Outer)


def _echo_app(config_cls: type, **options) -> typer.Typer:
    """A one-command CLI that prints the config it was given, as JSON."""
    app = typer.Typer()

    @app.command()
    @config_command(config_cls, **options)
    def show(settings: ConfigSettings) -> None:
        typer.echo(json.dumps(dataclasses.asdict(settings.build())))

    return app


def _run(app: typer.Typer, *args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return json.loads(result.output)


def test_a_config_file_gives_values_and_the_command_line_wins(tmp_path):
    path = tmp_path / "features.yaml"
    path.write_text("tagger: none\ndomain: false\nbatch_size: 8\nencoder:\n  max_length: 64\n")
    app = _echo_app(FeatureConfig)
    config = _run(app, "--config", str(path), "--batch-size", "32")
    assert (config["tagger"], config["domain"]) == ("none", False)
    assert config["encoder"] == {"encoder": None, "max_length": 64, "batch_size": 32,
                                 "device": "cpu"}  # fmt: skip
    assert _run(app)["tagger"] == "embedding"  # nothing given: the dataclass's defaults


def test_a_config_file_key_the_config_lacks_is_refused_naming_the_file_and_the_key(tmp_path):
    path = tmp_path / "route.yaml"
    path.write_text("budget: 0.5\ncolour: red\n")
    result = CliRunner().invoke(_echo_app(RouteConfig), ["--config", str(path)])
    assert result.exit_code != 0 and isinstance(result.exception, CuratorError)
    assert str(path) in str(result.exception) and "'colour'" in str(result.exception)
    path.write_text("encoder:\n  colour: red\n")
    with pytest.raises(CuratorError, match=r"route.yaml.*encoder\.colour"):
        load_config_file(FeatureConfig, path)


def test_a_config_file_value_of_the_wrong_type_is_refused_and_numbers_widen_to_floats(tmp_path):
    path = tmp_path / "route.yaml"
    path.write_text("budget: 1\nseed: 3\n")
    assert load_config_file(RouteConfig, path) == {"budget": 1.0, "seed": 3}
    path.write_text("candidates: many\n")
    with pytest.raises(CuratorError, match=r"route.yaml: candidates must be int, not 'many'"):
        load_config_file(RouteConfig, path)


def test_options_kept_from_before_by_their_cli_metadata_still_work():
    """Judge.aspects is ``--aspect`` (repeatable) and both_orders keeps ``--one-order``."""
    app = _echo_app(Judge)
    judge = _run(app, "--aspect", "helpful", "--aspect", "truthful", "--one-order")
    assert judge["aspects"] == ["helpful", "truthful"] and judge["both_orders"] is False
    assert _run(app)["aspects"] == ["overall"] and _run(app)["both_orders"] is True


def test_a_command_default_yields_to_a_value_given_in_the_file_or_on_the_command_line(tmp_path):
    app = typer.Typer()

    @app.command()
    @config_command(RouteConfig, computed=("method",))
    def show(settings: ConfigSettings) -> None:
        typer.echo(settings.build(method="simulated").method)

    assert CliRunner().invoke(app, []).output.strip() == "simulated"
    assert CliRunner().invoke(app, ["--method", "greedy"]).output.strip() == "greedy"
    path = tmp_path / "route.yaml"
    path.write_text("method: topk\n")
    assert CliRunner().invoke(app, ["--config", str(path)]).output.strip() == "topk"


def test_features_cli_takes_nested_encoder_options_and_a_config_file(
    workspace, tmp_path, monkeypatch
):
    """The real command: --config's file and --max-length land in the queued job's config."""
    from curation.store import Store

    monkeypatch.setenv("CURATOR_NO_AUTO_WORKER", "1")
    with Store.open(workspace) as store:
        ds = store.create_dataset("prefs", "preference")
        store.insert_instances(
            ds["id"], [Instance(uid="p0", prompt="q", response_a="a", response_b="b")]
        )
    path = tmp_path / "features.yaml"
    path.write_text("tagger: none\ndevice: cpu\nmax_length: 64\n")
    result = CliRunner().invoke(
        cli,
        ["features", "prefs", "-w", str(workspace.root), "--config", str(path),
         "--max-length", "128", "--no-domain", "--background", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with Store.open(workspace) as store:
        spec = jobs.get_job(store, json.loads(result.output)["job_id"]).spec
    assert (spec["config"]["tagger"], spec["config"]["domain"]) == ("none", False)
    assert spec["config"]["encoder"]["max_length"] == 128


def test_calibrate_keeps_its_keep_top_switch_beside_if_none_pass(workspace):
    """`--keep-top` (the older bool) and `--if-none-pass keep_top` mean the same."""
    options = _options(_command(("calibrate",)))
    assert options["--keep-top"].default is False
    assert options["--if-none-pass"].default == "abstain"
