#!/usr/bin/env python3
"""Refresh rulegen/data/sigmahq-taxonomy.json and sigmahq-filename.json, SigmaHQ's log source taxonomy and file
name conventions that pySigma-validators-sigmahq downloads on first use. rulegen ships them so validation never
touches the network; rulegen's own additions (rulegen/data/sigma-taxonomy.json, sigma-filename.json) are layered
on top at run time.

    .venv/bin/python scripts/update-sigmahq-data.py                  # from the URLs the validators use
    .venv/bin/python scripts/update-sigmahq-data.py path/to/pySigma-validators-sigmaHQ   # from a checkout
"""

import json
import sys
from pathlib import Path
from urllib.request import urlopen

from sigma.validators.sigmahq.data.data_filename import _FilenameLoader
from sigma.validators.sigmahq.data.data_taxonomy import _TaxonomyLoader

from rulegen.validate.sigma import SIGMAHQ_FILENAME_FILE, SIGMAHQ_TAXONOMY_FILE

for loader, target in ((_TaxonomyLoader, SIGMAHQ_TAXONOMY_FILE), (_FilenameLoader, SIGMAHQ_FILENAME_FILE)):
    source = loader._default_url
    if len(sys.argv) > 1:
        source = str(Path(sys.argv[1]) / "tools" / source.rsplit("/", 1)[1])
        text = Path(source).read_text(encoding="utf-8")
    else:
        with urlopen(source, timeout=60) as response:  # noqa: S310 - maintenance script, never run by rulegen
            text = response.read().decode("utf-8")
    data = json.loads(text)
    loader()._parse(data)  # refuse what the validators could not read
    target.write_text(text, encoding="utf-8")  # as published, so a refresh reads as a plain diff
    print(f"wrote {target} (version {data.get('version')}) from {source}")
