"""``python -m oat_agents.bench.regret`` = ``oat-bench regret``."""

from oat_agents.bench.regret import main

main()
