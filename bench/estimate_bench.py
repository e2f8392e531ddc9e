"""How long the campaign confirmation's numbers take on synthetic towns (SQLite file).

Run from the repository root:

    /work/venv/bin/python bench/estimate_bench.py                # 10,000 and 50,000 people
    /work/venv/bin/python bench/estimate_bench.py --sizes 2000 --repeat 5

``dispatch.estimate.estimate_campaign`` resolves the audience and renders every SMS text the way
``start_campaign`` will, so an officer waits for it between "/drill" and the confirmation: it
must stay well under a second for a town. Prints medians of ``--repeat`` runs (shared machine:
expect noise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hosen.schema  # noqa: E402, F401  (every model on Base.metadata)
from config.profile import DEFAULT_PROFILE_PATH, load_profile  # noqa: E402
from config.settings import Settings  # noqa: E402
from dispatch.campaigns import Audience  # noqa: E402
from dispatch.estimate import estimate_campaign  # noqa: E402
from dispatch.models import CampaignKind, CampaignMode  # noqa: E402
from fakes.town import generate_town, load_town  # noqa: E402
from registry.db import Base, make_engine, make_sessionmaker  # noqa: E402
from registry.profile_sync import sync_profile  # noqa: E402

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
CASES = {
    "residents, check-in": (Audience(residents_only=True), CampaignKind.CHECKIN, None),
    "everyone, check-in": (Audience(), CampaignKind.CHECKIN, None),
    "everyone, announcement": (
        Audience(),
        CampaignKind.ANNOUNCEMENT,
        "Shelters are open. Stay near a protected room.",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    profile = load_profile(DEFAULT_PROFILE_PATH)
    print(f"{'people':>8}  {'case':<24} {'recipients':>10} {'sms segm.':>9} {'median s':>9}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite3"
            engine = make_engine(url)
            Base.metadata.create_all(engine)
            sessions = make_sessionmaker(engine)
            with sessions() as session:
                directory = sync_profile(session, profile)
                load_town(session, generate_town(profile, size=size), directory, now=NOW)
                session.commit()
                authority = directory.authorities["kiryat-tamar"]
            settings = Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]
            for label, (audience, kind, text) in CASES.items():
                times = []
                for _ in range(args.repeat):
                    with sessions() as session:
                        started = time.perf_counter()
                        estimate = estimate_campaign(
                            session,
                            authority=session.merge(authority),
                            audience=audience,
                            kind=kind,
                            mode=CampaignMode.DRILL,
                            settings=settings,
                            now=NOW,
                            text=text,
                            profile=profile,
                        )
                        times.append(time.perf_counter() - started)
                print(
                    f"{size:>8}  {label:<24} {estimate.recipients:>10} "
                    f"{estimate.sms_segments:>9} {statistics.median(times):>9.3f}"
                )
            engine.dispose()


if __name__ == "__main__":
    main()
