rule render_report:
    input:
        notebook=os.path.join(NOTEBOOKS, "{task}.ipynb"),
        metrics=f"{RESULTS}/{{task}}/metrics.json",
        predictions=f"{RESULTS}/{{task}}/predictions.csv",
    output:
        executed=f"{RESULTS}/{{task}}/report.ipynb",
        html=f"{RESULTS}/{{task}}/report.html",
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
        "sdofm report --notebook {input.notebook} --executed {output.executed}"
        " --html {output.html} -p metrics_path={input.metrics}"
        " -p predictions_path={input.predictions} > {log} 2>&1"
