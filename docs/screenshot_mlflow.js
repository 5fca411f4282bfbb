// What docs/mlflow-ui.md shows: the MLflow UI at the addresses `study run` prints, in a headless
// Chromium driven by playwright-core (npm), one screenshot per view.
//   node docs/screenshot_mlflow.js BASE_URL EXPERIMENT_ID SUMMARY_RUN_ID OUT_DIR
// The MLflow Assistant panel, which MLflow 3.17 opens on a browser's first visit, is closed
// first (a user closes it once; the browser remembers).
const { chromium } = require('playwright-core');

const [base, experiment, summary, out] = process.argv.slice(2);
const answer = `${base}/#/experiments/${experiment}/runs/${summary}?workflowType=machine_learning`;
const views = [
  ['mlflow_answer.png', answer, []],                               // as the address opens
  ['mlflow_answer_table.png', answer, ['Show more'], true],         // one click: the description
  ['mlflow_runs.png', `${base}/#/experiments/${experiment}/runs?workflowType=machine_learning` +
    '&viewStateShareKey=study-runs', []],
  ['mlflow_experiment.png', `${base}/#/experiments/${experiment}`, []],  // the plain address
];

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'] });
  for (const [name, url, clicks, full] of views) {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await page.addInitScript(() => {
      localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
      localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
    });
    await page.goto(url);
    await page.waitForTimeout(8000);
    for (const text of clicks) {
      await page.getByText(text, { exact: true }).first().click({ timeout: 10000 });
      await page.waitForTimeout(1500);
    }
    await page.screenshot({ path: `${out}/${name}`, fullPage: Boolean(full) });
    console.log(`wrote ${out}/${name} (${url})`);
    await page.close();
  }
  await browser.close();
})().catch(error => { console.error(error.message); process.exit(1); });
