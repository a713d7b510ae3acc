"""`rulegen hunt`: Sigma rules over sensor logs, without a SIEM.

formats (detect a log's producer from its content, read it line by line, `.gz` too), rules (convert the Sigma
rules for each producer with pySigma-backend-sqlite and the producer's pipeline in rulegen/data/pipelines),
engine (run the converted queries over batches of events in an in-memory SQLite table; correlations over the
events their timespan still holds), report (table, plain text or NDJSON; the exit code).
"""
