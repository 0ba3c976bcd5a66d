// chatstream.js - the chat page's entry module, served at /chatstream.js.
//
// It reads the configuration the server wrote into the page and starts the app. The other
// modules are served under webui/ (hence the prefix here, and only here): app.js wires them
// together; see the README for what each one owns.

import { ChatApp } from "./webui/app.js";

const island = document.getElementById("cs-config");
const config = island ? JSON.parse(island.textContent || "{}") : {};
new ChatApp(config).start();
