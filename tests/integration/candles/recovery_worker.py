"""Child process of the recovery test: the candles service on Kafka with a recovery store.

``python -m tests.integration.candles.recovery_worker --bootstrap B --trades T --bars T_bars
--dsn DSN --recovery-dir DIR [--until-end]`` runs ``run_candles`` with one worker until it is
killed, or with ``--until-end`` until the trades topic is read to its end (then exit 0). The
test SIGKILLs it at random points; nothing here may need a clean shutdown.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

from candles.service import run_candles
from tickerplant.settings import CandlesSettings, KafkaSettings, Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--trades", required=True, help="trades topic")
    parser.add_argument("--bars", required=True, help="bars topic")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--recovery-dir", type=Path, required=True)
    parser.add_argument("--epoch-s", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--until-end", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="worker %(levelname)s %(name)s %(message)s")
    settings = Settings(
        kafka_bootstrap=args.bootstrap,
        kafka=KafkaSettings(connect_attempts=3, connect_backoff_s=0.2, request_timeout_s=10.0),
        candles=CandlesSettings(
            batch_size=args.batch_size,
            flush_interval_s=args.epoch_s,
            recovery_dir=args.recovery_dir,
            metrics_port=0,
        ),
    )
    run_candles(
        settings,
        until=threading.Event(),  # never set: killed, or ends at the end of the topic
        dsn=args.dsn,
        announce=lambda _: None,
        trades_topic=args.trades,
        bars_topic=args.bars,
        until_end=args.until_end,
    )


if __name__ == "__main__":
    main()
