/**
 * "Open in workbench": the file browser's context menu opens the workbench dashboard on
 * an .onnx or .pt2 file in a JupyterLab tab.
 *
 * The tab is an iframe on `<base>/workbench/open?path=…`, served by this package's
 * server extension, which checks the path and hands over to Panel's Jupyter server
 * extension: the dashboard runs in a kernel of the same Jupyter server.
 *
 * A .pt2 opens checked (inspected before torch reads it; refused if it could run code)
 * unless the user chooses "Trust and open" in a dialog. Trust is then asked of the
 * server by a POST that carries Jupyter's XSRF token (a page on another site cannot
 * send one), and the server answers with a single-use grant the tab's URL carries: no
 * URL alone ever makes the server trust a file.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, IFrame, MainAreaWidget, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ServerConnection } from '@jupyterlab/services';

const COMMAND = 'workbench:open';
/** Suffixes the dashboard opens, and whether the user may choose to trust one. */
const SUFFIXES: { [suffix: string]: boolean } = { '.onnx': false, '.pt2': true };

function suffix(path: string): string {
  const dot = path.lastIndexOf('.');
  return dot < 0 ? '' : path.slice(dot).toLowerCase();
}

/** How to open a file whose loading may run code: 'checked', 'trusted', or null (cancel). */
async function chooseTrust(name: string): Promise<'checked' | 'trusted' | null> {
  const trust = Dialog.warnButton({ label: 'Trust and open' });
  const checked = Dialog.okButton({ label: 'Open checked' });
  const result = await showDialog({
    title: 'Trust this model file?',
    body:
      `${name} is inspected before torch reads it and refused if it could run code ` +
      '("Open checked"). "Trust and open" skips the check: loading it may then run ' +
      'code it contains. Trust it only if you trust whoever made it.',
    buttons: [Dialog.cancelButton(), checked, trust]
  });
  if (!result.button.accept) {
    return null;
  }
  return result.button.label === trust.label ? 'trusted' : 'checked';
}

/** Ask the server for a grant of trust in `path` (a POST with Jupyter's XSRF token). */
async function grantTrust(path: string): Promise<string> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'workbench/trust');
  const response = await ServerConnection.makeRequest(
    url,
    { method: 'POST', body: JSON.stringify({ path }) },
    settings
  );
  if (!response.ok) {
    throw new Error(await response.text());
  }
  return (await response.json()).grant as string;
}

/** The open dashboard tabs by file and trust: opening one again shows its tab. */
const opened = new Map<string, MainAreaWidget<IFrame>>();

function openDashboard(app: JupyterFrontEnd, path: string, grant: string): void {
  const key = `${grant ? 'trusted' : 'checked'}:${path}`;
  const existing = opened.get(key);
  if (existing !== undefined) {
    app.shell.activateById(existing.id);
    return;
  }
  const query = URLExt.objectToQueryString(grant ? { path, grant } : { path });
  const content = new IFrame({
    // the dashboard's scripts, its websocket and Jupyter's cookie need the same origin
    sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-downloads']
  });
  content.url = URLExt.join(ServerConnection.makeSettings().baseUrl, 'workbench/open') + query;
  const widget = new MainAreaWidget({ content });
  const name = path.split('/').pop() ?? path;
  widget.id = `workbench-${key}`;
  widget.title.label = `workbench: ${name}${grant ? ' (trusted)' : ''}`;
  widget.title.caption = path;
  widget.title.closable = true;
  opened.set(key, widget);
  widget.disposed.connect(() => opened.delete(key));
  app.shell.add(widget, 'main');
  app.shell.activateById(widget.id);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'workbench-jupyterlab:open',
  description: 'Open .onnx and .pt2 files (checked, or trusted on request) in the workbench dashboard.',
  autoStart: true,
  requires: [IFileBrowserFactory],
  activate: (app: JupyterFrontEnd, factory: IFileBrowserFactory) => {
    const selected = (): string | undefined => {
      const item = factory.tracker.currentWidget?.selectedItems().next();
      return item && !item.done ? item.value.path : undefined;
    };
    app.commands.addCommand(COMMAND, {
      label: 'Open in workbench',
      caption: 'Profile this model in the workbench dashboard',
      isVisible: () => suffix(selected() ?? '') in SUFFIXES,
      execute: async () => {
        const path = selected();
        if (path === undefined || !(suffix(path) in SUFFIXES)) {
          return;
        }
        let grant = '';
        if (SUFFIXES[suffix(path)]) {
          const choice = await chooseTrust(path);
          if (choice === null) {
            return;
          }
          if (choice === 'trusted') {
            try {
              grant = await grantTrust(path);
            } catch (error) {
              await showErrorMessage('workbench: trust not granted', String(error));
              return;
            }
          }
        }
        openDashboard(app, path, grant);
      }
    });
    app.contextMenu.addItem({
      command: COMMAND,
      selector: '.jp-DirListing-item[data-isdir="false"]',
      rank: 3
    });
  }
};

export default plugin;
