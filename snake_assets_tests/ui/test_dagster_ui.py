"""The Dagster UI as a person uses it: the asset graph, check results, the UMAP picture and the hover page.

The demo graph is materialized on a persistent temp instance, ``dagster-webserver``
serves it on 127.0.0.1, and headless Chromium opens the pages. Screenshots are saved
under ``.test_artifacts/ui/`` (their paths are printed).
"""

from pathlib import Path

import dagster as dg
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from snake_assets.core.demo import DEMO_SPECIES
from snake_assets.definitions import defs
from snake_assets_tests.ui.conftest import browser_missing

pytestmark = [pytest.mark.ui, pytest.mark.skipif(bool(browser_missing()), reason=browser_missing() or "browser present")]

WAIT_S = 90


def _graph():
    return defs().resolve_asset_graph()


def _wait_for_text(browser, *texts: str) -> str:
    """Wait until the page body shows every text; return the body text."""
    def shown(d):
        body = d.find_element(By.TAG_NAME, "body").text
        return body if all(t in body for t in texts) else False

    try:
        return WebDriverWait(browser, WAIT_S).until(shown)
    except TimeoutException:
        body = browser.find_element(By.TAG_NAME, "body").text
        missing = [t for t in texts if t not in body]
        raise AssertionError(f"{browser.current_url} never showed {missing}; page text:\n{body[:3000]}") from None


def test_asset_graph_shows_every_group(browser, webserver, screenshot):
    groups = sorted({_graph().get(key).group_name for key in _graph().get_all_asset_keys()})
    assert "diagnostics" in groups
    browser.get(f"{webserver}/asset-groups")
    _wait_for_text(browser, *groups)
    screenshot("asset_graph")


def _listed_checks(body: str, count: int) -> dict[str, str]:
    """``shown name -> status`` from the checks tab's list (names may be shortened with "…")."""
    lines = body.splitlines()
    start = lines.index("Execute all") + 1
    return dict(zip(lines[start:start + 2 * count:2], lines[start + 1:start + 2 * count:2]))


def _shown_as(shown: str, name: str) -> bool:
    head, _, tail = shown.partition("\u2026")
    return shown == name or (bool(tail) and name.startswith(head) and name.endswith(tail))


def test_check_results_show_on_every_checked_asset(browser, webserver, demo_home):
    graph = _graph()
    checked = {key: sorted(graph.get(key).check_keys, key=lambda c: c.name)
               for key in graph.get_all_asset_keys() if graph.get(key).check_keys}
    assert dg.AssetKey("embedding_projection") in checked
    with dg.DagsterInstance.from_config(demo_home["env"]["DAGSTER_HOME"]) as instance:
        recorded = {c: instance.get_latest_asset_check_evaluation_record(c) for checks in checked.values() for c in checks}
    for asset, checks in sorted(checked.items(), key=lambda kv: kv[0].to_user_string()):
        browser.get(f"{webserver}/assets/{asset.to_user_string()}?view=checks")
        body = _wait_for_text(browser, f"Checks ({len(checks)})", "Evaluation result")
        listed = _listed_checks(body, len(checks))
        for check in checks:
            record = recorded[check]
            assert record is not None, f"{check.name} was never evaluated"
            passed = record.status.value == "SUCCEEDED"
            status = [st for shown, st in listed.items() if _shown_as(shown, check.name)]
            assert status == (["Succeeded"] if passed else status) and status, (asset, check.name, listed)
            assert passed or status[0] in ("Failed", "Warning"), (asset, check.name, status)
    project = recorded[dg.AssetCheckKey(dg.AssetKey("embedding_projection"), "projection_covers_species_subset")]
    assert project.status.value == "SUCCEEDED"


def test_projection_page_shows_the_umap_image(browser, webserver, demo_home, screenshot):
    browser.get(f"{webserver}/assets/embedding_projection")
    _wait_for_text(browser, "separability", "umap_cls", "Latest check results")
    link = browser.find_element(By.XPATH, "//tr[.//*[normalize-space()='umap_cls']]//a[normalize-space()='[Show Markdown]']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    width = WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(
        "const img = Array.from(document.images).find(i => i.alt === 'UMAP of cls');"
        "return img && img.complete ? img.naturalWidth : 0;"
    ))
    assert width > 300
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(  # the dialog has faded in: a clear screenshot
        "let el = Array.from(document.images).find(i => i.alt === 'UMAP of cls'), o = 1;"
        "for (; el; el = el.parentElement) o *= parseFloat(getComputedStyle(el).opacity); return o === 1;"
    ))
    screenshot("embedding_projection_umap")


def test_hovering_a_point_shows_its_thumbnail(browser, demo_home, screenshot):
    (page,) = (demo_home["lake"] / "diagnostics").glob("*/projection.html")
    browser.get(Path(page).as_uri())
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(
        "const gd = document.getElementById('projection'); return !!(gd && gd._fullLayout && gd.calcdata);"
    ))
    browser.execute_script("window.scrollTo(0, 0)")
    x, y = browser.execute_script(  # viewport position of the first point of the first panel
        "const gd = document.getElementById('projection'), fl = gd._fullLayout, pt = gd.calcdata[0][0];"
        "const box = gd.getBoundingClientRect();"
        "return [box.left + fl.xaxis._offset + fl.xaxis.c2p(pt.x), box.top + fl.yaxis._offset + fl.yaxis.c2p(pt.y)];"
    )
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(round(x), round(y))  # a real mouse move: plotly emits plotly_hover
    actions.perform()
    width = WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "const img = document.getElementById('hover-thumb'); return img.src && img.complete ? img.naturalWidth : 0;"
    ))
    assert width > 0
    text = browser.find_element(By.ID, "hover-text").text
    assert "observation" in text and text.split(" \u2014 ")[0] in DEMO_SPECIES
    screenshot("projection_hover")
