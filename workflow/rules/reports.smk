rule render_report:
    input:
        notebook=os.path.join(NOTEBOOKS, "{task}.ipynb"),
        metrics=f"{RESULTS}/{{task}}/metrics.json",
        predictions=f"{RESULTS}/{{task}}/predictions.csv",
        samples=f"{RESULTS}/{{task}}/samples.nc",
    output:
        executed=f"{RESULTS}/{{task}}/report.ipynb",
        html=report(
            f"{RESULTS}/{{task}}/report.html",
            caption="../report/task_report.rst",
            category="Tasks",
            labels={"task": "{task}"},
        ),
    log:
        f"{LOGS}/render_report/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/render_report/{{task}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=runtime_for(30),
    shell:
        "sdofm report --notebook {input.notebook:q} --executed {output.executed:q}"
        " --html {output.html:q} -p metrics_path={input.metrics:q}"
        " -p predictions_path={input.predictions:q}"
        " -p samples_path={input.samples:q} > {log:q} 2>&1"


rule render_summary:
    input:
        notebook=os.path.join(NOTEBOOKS, "summary.ipynb"),
        metrics=expand(f"{RESULTS}/{{task}}/metrics.json", task=TASKS),
        reports=all_reports(),
        pretraining=expand(rules.pretrain_backbone.output, run=RUNS),
        embedding_map=expand(rules.map_embeddings.output.png, run=RUN),
        sweep=rules.select_sweep.output if SWEEP else [],
    output:
        executed=f"{RESULTS}/summary/report.ipynb",
        html=report(
            f"{RESULTS}/summary/report.html",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/render_summary.log",
    benchmark:
        f"{BENCHMARKS}/render_summary.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=runtime_for(30),
    params:
        results=subpath(output.executed, ancestor=2),
        backbone=RUN,
        runs=",".join(RUNS),
        tasks=",".join(TASKS),
    shell:
        "sdofm report --notebook {input.notebook:q} --executed {output.executed:q}"
        " --html {output.html:q} -p results_dir={params.results:q}"
        " -p backbone={params.backbone:q} -p runs={params.runs:q}"
        " -p tasks={params.tasks:q} -p sweep_table={input.sweep:q} > {log:q} 2>&1"
