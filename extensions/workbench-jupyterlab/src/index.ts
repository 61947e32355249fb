/**
 * "Open in workbench": the file browser's context menu opens the workbench dashboard on
 * an .onnx file (or, after the user says they trust it, a .pt2 file) in a JupyterLab tab.
 *
 * The tab is an iframe on `<base>/workbench/open?path=…`, served by this package's
 * server extension, which checks the path and hands over to Panel's Jupyter server
 * extension: the dashboard runs in a kernel of the same Jupyter server.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, IFrame, MainAreaWidget, showDialog } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';

const COMMAND = 'workbench:open';
/** Suffixes the dashboard opens, and whether one needs the user's trust first. */
const SUFFIXES: { [suffix: string]: boolean } = { '.onnx': false, '.pt2': true };

function suffix(path: string): string {
  const dot = path.lastIndexOf('.');
  return dot < 0 ? '' : path.slice(dot).toLowerCase();
}

/** Ask before opening a file whose loading may run code; true when the user trusts it. */
async function confirmTrust(name: string): Promise<boolean> {
  const result = await showDialog({
    title: 'Trust this model file?',
    body:
      `Loading ${name} may run code it contains. ` +
      'Open it only if you trust whoever made it.',
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({ label: 'Trust and open' })
    ]
  });
  return result.button.accept;
}

/** The open dashboard tabs by file: opening a file again shows its tab (one kernel each). */
const opened = new Map<string, MainAreaWidget<IFrame>>();

function openDashboard(app: JupyterFrontEnd, path: string, trust: boolean): void {
  const existing = opened.get(path);
  if (existing !== undefined) {
    app.shell.activateById(existing.id);
    return;
  }
  const query = URLExt.objectToQueryString({ path, trust: trust ? '1' : '0' });
  const content = new IFrame({
    // the dashboard's scripts, its websocket and Jupyter's cookie need the same origin
    sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-downloads']
  });
  content.url = URLExt.join(PageConfig.getBaseUrl(), 'workbench/open') + query;
  const widget = new MainAreaWidget({ content });
  const name = path.split('/').pop() ?? path;
  widget.id = `workbench-${path}`;
  widget.title.label = `workbench: ${name}`;
  widget.title.caption = path;
  widget.title.closable = true;
  opened.set(path, widget);
  widget.disposed.connect(() => opened.delete(path));
  app.shell.add(widget, 'main');
  app.shell.activateById(widget.id);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'workbench-jupyterlab:open',
  description: 'Open .onnx and trusted .pt2 files in the workbench dashboard.',
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
        const trust = SUFFIXES[suffix(path)];
        if (trust && !(await confirmTrust(path))) {
          return;
        }
        openDashboard(app, path, trust);
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
