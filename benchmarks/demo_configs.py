"""Test accuracy and training time of `vit-zoo demo`'s configuration with overrides, per seed.

    python benchmarks/demo_configs.py model.depth=6 model.hidden_dim=96 --seeds 0,1,2

Each override is section.key=value on vit_zoo.train.demo.DEMO (as `vit-zoo train --set`). Trains
and evaluates like the demo, without its exports (add their ~20 s for the whole command's time).
Prints one line per seed and a summary line; name the CPU (`lscpu`) next to any figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args()

    import yaml

    from vit_zoo.train.demo import DEMO
    from vit_zoo.train.runner import TrainConfig, train

    accuracies = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as output:
            demo_file = os.path.join(output, "demo.yaml")
            with open(demo_file, "w") as stream:
                yaml.safe_dump(DEMO, stream)
            config = TrainConfig.from_yaml(demo_file, [*args.overrides, f"run.seed={seed}",
                                                       f"run.output={output}", "run.verbose=0"])
            started = time.perf_counter()
            metrics = train(config)
        accuracies.append(metrics["test_accuracy"])
        print(f"seed {seed}: test accuracy {metrics['test_accuracy']:.4f}, training "
              f"{metrics['train_seconds']:.1f} s, {time.perf_counter() - started:.1f} s in all",
              flush=True)
    print(f"{' '.join(args.overrides) or 'the demo'}: min {min(accuracies):.4f} over seeds "
          f"{args.seeds}")


if __name__ == "__main__":
    main()
