rule select_sweep:
    input:
        sweep_inputs,
    output:
        f"{RESULTS}/sweep/sweep.csv",
    log:
        f"{LOGS}/select_sweep.log",
    benchmark:
        f"{BENCHMARKS}/select_sweep.tsv"
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=runtime_for(10),
    params:
        settings=as_arg("sweep") if SWEEP else "",
        runs=",".join(SWEEP.instance_patterns) if SWEEP else "",
        results=subpath(output[0], ancestor=2),
    shell:
        # each point's settings and validation (or probe) score; the chosen point marked
        "sdofm sweep --params {params.settings} --runs {params.runs:q}"
        " --results {params.results:q} --out {output:q} > {log:q} 2>&1"
