"""Parse Prometheus' text exposition format from stdin with Prometheus' own Python client
(prometheus_client.parser), and print what it read as JSON: each family's type, and every
sample as [name, labels, value]. A document the parser refuses makes this fail."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value])
print(json.dumps({"families": families, "samples": samples}))
