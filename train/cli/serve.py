"""``recflow-serve run=DIR [host=127.0.0.1] [port=8000]``: recommendations over HTTP.

``GET /health`` and ``POST /recommend``; see docs/serving.md, conf/serve.yaml and
:mod:`train.serving.http`.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from train.cli.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="serve")
def main(cfg: DictConfig) -> None:
    from train.extras import require

    uvicorn = require("uvicorn", "serve", "recflow-serve")
    require("fastapi", "serve", "recflow-serve")
    from train.serving.http import build_app

    app = build_app(cfg)
    print(f"serving {cfg.run} on http://{cfg.host}:{cfg.port} (GET /health, POST /recommend)", flush=True)
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_level=str(cfg.log_level))


if __name__ == "__main__":
    main()
