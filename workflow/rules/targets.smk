# A report or result asked of no configured task: one line listing the tasks. The wildcard
# matches no task of the config and not the summary, so this rule never runs.
rule unknown_task:
    input:
        unknown_task,
    output:
        f"{RESULTS}/{{unknown}}/report.html",
        f"{RESULTS}/{{unknown}}/metrics.json",
    log:
        f"{LOGS}/unknown_task/{{unknown}}.log",
    benchmark:
        f"{BENCHMARKS}/unknown_task/{{unknown}}.tsv"
    wildcard_constraints:
        unknown=f"(?!(?:{'|'.join(TASKS)}|summary)/)[^/]+",
    conda:
        ENV
    resources:
        mem_mb=100,
    shell:
        "exit 1"
