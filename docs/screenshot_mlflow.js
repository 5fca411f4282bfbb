// What docs/mlflow-ui.md shows: the MLflow UI at the addresses `study run` prints, in a headless
// Chromium driven by playwright-core (npm), one screenshot per view.
//   node docs/screenshot_mlflow.js BASE_URL EXPERIMENT_ID SUMMARY_RUN_ID OUT_DIR
// The MLflow Assistant panel, which MLflow 3.17 opens on a browser's first visit, is closed
// first (a user closes it once; the browser remembers).
const { chromium } = require('playwright-core');

const [base, experiment, summary, out] = process.argv.slice(2);
const answer = `${base}/#/experiments/${experiment}/runs/${summary}?workflowType=machine_learning`;
const views = [   // name, address, the text that says the page is there, clicks, height
  ['mlflow_answer.png', answer, 'Show more', [], 900],              // as the address opens
  ['mlflow_answer_table.png', answer, 'Show more', ['Show more'], 1500],  // after one click
  ['mlflow_runs.png', `${base}/#/experiments/${experiment}/runs?workflowType=machine_learning` +
    '&viewStateShareKey=study-runs', 'final_test_acc', [], 900],
  ['mlflow_experiment.png', `${base}/#/experiments/${experiment}`, 'The answer:', [], 900],
];

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'] });
  for (const [name, url, ready, clicks, height] of views) {
    const page = await browser.newPage({ viewport: { width: 1440, height } });
    await page.addInitScript(() => {
      localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
      localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
    });
    await page.goto(url);
    await page.getByText(ready).first().waitFor({ timeout: 120000 });
    await page.waitForTimeout(3000);                       // the rest of the page settles
    for (const text of clicks) {
      await page.getByText(text, { exact: true }).first().click({ timeout: 10000 });
      await page.waitForTimeout(1500);
    }
    await page.screenshot({ path: `${out}/${name}` });
    console.log(`wrote ${out}/${name} (${url})`);
    await page.close();
  }
  await browser.close();
})().catch(error => { console.error(error.message); process.exit(1); });
