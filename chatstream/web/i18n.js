// i18n.js - the page's UI strings in English and Japanese, and how the language is chosen.
//
// The server's `locale` option wins; without one, the browser's preferred languages decide; the
// fallback is English. Static markup names its strings with data-i18n attributes, which
// `translatePage` fills in; code calls `t(key, values)`, where "{name}" is replaced by values.name.

const STRINGS = {
  en: {
    title: "ChatStream",
    settings: "Settings",
    newChat: "New chat",
    newChatHint: "Clear this conversation and start a new one",
    message: "Message",
    placeholder: "Type a message",
    send: "Send",
    stop: "Stop",
    regenerate: "Regenerate",
    hint: "Enter to send · Shift+Enter for a new line · Esc to stop",
    jumpToLatest: "Scroll to the latest message",
    conversation: "Conversation",
    you: "You",
    assistant: "Assistant",
    copy: "Copy",
    copyCode: "Copy code",
    copyReply: "Copy reply",
    copied: "Copied",
    copyFailed: "Copy failed",
    like: "Good reply",
    dislike: "Bad reply",
    feedbackSaved: "Thanks for the feedback",
    feedbackFailed: "The feedback was not saved: {detail}",
    stats: "{tokens} tokens · {rate} tokens/s · first token {ttft} s",
    statsNoRate: "{tokens} tokens · first token {ttft} s",
    stopped: "Stopped",
    connectionLost: "Connection lost",
    replying: "The assistant is replying…",
    replyDone: "Reply complete",
    replyStopped: "Reply stopped",
    busyRetrying: "The server is busy. Retrying in {seconds} s…",
    busyGaveUp: "The server is still busy. Your message was not sent.",
    retryNow: "Retry now",
    retry: "Retry",
    cancel: "Cancel",
    dismiss: "Dismiss",
    networkError: "The connection to the server was lost.",
    networkErrorAfterStart: "The connection was lost during the reply. Retry asks for a new reply.",
    replyFailed: "The server could not finish the reply: {detail}. Retry asks for a new reply.",
    serverError: "The server answered {status}: {detail}",
    loadingModel: "Loading the model…",
    loadingElapsed: "{model} · {seconds} s so far. The chat opens as soon as it is ready.",
    loadFailed: "The model could not be loaded: {detail}",
    engineDead: "The model server stopped: {detail}",
    settingsTitle: "Settings",
    systemPrompt: "System prompt",
    systemPromptHelp: "Instructions the model sees before the conversation (its role, tone, language). Leave empty for the model's default.",
    save: "Save",
    close: "Close",
    loadingSettings: "Loading…",
    saving: "Saving…",
    saved: "Saved",
    nothingChanged: "Nothing changed",
    settingsLoadFailed: "The settings could not be loaded: {detail}",
    settingsSaveFailed: "Not saved: {detail}",
    fixErrors: "Fix the highlighted values first",
    rangeInteger: "An integer from {min} to {max}",
    rangeNumber: "A number from {min} to {max}",
    rangeNumberOpen: "A number above {min}, up to {max}",
    temperature: "Temperature",
    temperatureHelp: "Randomness. 0 always picks the most likely word; higher values give more varied replies.",
    top_p_value: "Top-p",
    top_p_valueHelp: "Samples only from the most likely words that together make up this probability. 1 turns it off.",
    top_k_value: "Top-k",
    top_k_valueHelp: "Samples only from this many most likely words. 0 turns it off.",
    max_new_tokens: "Max new tokens",
    max_new_tokensHelp: "The longest reply, in tokens (about ¾ of an English word each).",
    repetition_penalty: "Repetition penalty",
    repetition_penaltyHelp: "Above 1 makes words already used less likely. 1 turns it off.",
    frequency_penalty: "Frequency penalty",
    frequency_penaltyHelp: "Lowers a word's chance by how often the reply already used it. 0 turns it off.",
    presence_penalty: "Presence penalty",
    presence_penaltyHelp: "Lowers the chance of any word the reply already used. 0 turns it off.",
  },
  ja: {
    title: "ChatStream",
    settings: "設定",
    newChat: "新しい会話",
    newChatHint: "この会話を消して新しい会話を始めます",
    message: "メッセージ",
    placeholder: "メッセージを入力",
    send: "送信",
    stop: "停止",
    regenerate: "再生成",
    hint: "Enter で送信 · Shift+Enter で改行 · Esc で停止",
    jumpToLatest: "最新のメッセージへ移動",
    conversation: "会話",
    you: "あなた",
    assistant: "アシスタント",
    copy: "コピー",
    copyCode: "コードをコピー",
    copyReply: "返答をコピー",
    copied: "コピーしました",
    copyFailed: "コピーできませんでした",
    like: "良い返答",
    dislike: "良くない返答",
    feedbackSaved: "フィードバックありがとうございます",
    feedbackFailed: "フィードバックを保存できませんでした: {detail}",
    stats: "{tokens} トークン · {rate} トークン/秒 · 最初のトークンまで {ttft} 秒",
    statsNoRate: "{tokens} トークン · 最初のトークンまで {ttft} 秒",
    stopped: "停止しました",
    connectionLost: "接続が切れました",
    replying: "アシスタントが返答しています…",
    replyDone: "返答が完了しました",
    replyStopped: "返答を停止しました",
    busyRetrying: "サーバーが混み合っています。{seconds} 秒後に再試行します…",
    busyGaveUp: "サーバーがまだ混み合っています。メッセージは送信されていません。",
    retryNow: "今すぐ再試行",
    retry: "再試行",
    cancel: "キャンセル",
    dismiss: "閉じる",
    networkError: "サーバーとの接続が切れました。",
    networkErrorAfterStart: "返答の途中で接続が切れました。再試行すると新しい返答を求めます。",
    replyFailed: "サーバーが返答を完了できませんでした: {detail}。再試行すると新しい返答を求めます。",
    serverError: "サーバーの応答 {status}: {detail}",
    loadingModel: "モデルを読み込んでいます…",
    loadingElapsed: "{model} · {seconds} 秒経過。準備ができ次第チャットを始められます。",
    loadFailed: "モデルを読み込めませんでした: {detail}",
    engineDead: "モデルサーバーが停止しました: {detail}",
    settingsTitle: "設定",
    systemPrompt: "システムプロンプト",
    systemPromptHelp: "会話の前にモデルに渡す指示（役割、口調、言語など）。空欄ならモデルの既定値です。",
    save: "保存",
    close: "閉じる",
    loadingSettings: "読み込み中…",
    saving: "保存中…",
    saved: "保存しました",
    nothingChanged: "変更はありません",
    settingsLoadFailed: "設定を読み込めませんでした: {detail}",
    settingsSaveFailed: "保存できませんでした: {detail}",
    fixErrors: "赤く示した値を直してください",
    rangeInteger: "{min} から {max} までの整数",
    rangeNumber: "{min} から {max} までの数値",
    rangeNumberOpen: "{min} より大きく {max} 以下の数値",
    temperature: "温度 (Temperature)",
    temperatureHelp: "ランダムさ。0 なら常に最も確からしい語を選び、大きいほど返答が多様になります。",
    top_p_value: "Top-p",
    top_p_valueHelp: "確率の合計がこの値になるまでの上位の語だけから選びます。1 で無効。",
    top_k_value: "Top-k",
    top_k_valueHelp: "確率の高い上位この数の語だけから選びます。0 で無効。",
    max_new_tokens: "最大生成トークン数",
    max_new_tokensHelp: "返答の最大の長さ（トークン数）。日本語ではおよそ 1 トークン 1 文字です。",
    repetition_penalty: "繰り返しペナルティ",
    repetition_penaltyHelp: "1 より大きいと、すでに使った語が出にくくなります。1 で無効。",
    frequency_penalty: "頻度ペナルティ",
    frequency_penaltyHelp: "返答ですでに使った回数に応じて、その語を出にくくします。0 で無効。",
    presence_penalty: "存在ペナルティ",
    presence_penaltyHelp: "返答ですでに使った語を出にくくします。0 で無効。",
  },
};

export const LOCALES = Object.keys(STRINGS);

/** The UI language: the server's choice, else the first supported browser language, else English. */
export function chooseLocale(serverLocale, browserLanguages) {
  for (const tag of [serverLocale, ...(browserLanguages || [])]) {
    const language = String(tag || "").toLowerCase().split(/[-_]/)[0];
    if (language in STRINGS) return language;
  }
  return "en";
}

/** A translator for `locale`: t(key, values) -> string; unknown keys fall back to English, then the key. */
export function createTranslator(locale) {
  const table = STRINGS[locale] || STRINGS.en;
  return (key, values) => {
    const text = table[key] ?? STRINGS.en[key] ?? key;
    return values ? text.replace(/\{(\w+)\}/g, (match, name) => (name in values ? String(values[name]) : match)) : text;
  };
}

/** Fill in the static markup: data-i18n (text), data-i18n-label (aria-label), -title, -placeholder. */
export function translatePage(root, t, locale) {
  document.documentElement.lang = locale;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const [attr, name] of [["i18nLabel", "aria-label"], ["i18nTitle", "title"], ["i18nPlaceholder", "placeholder"]]) {
    for (const el of root.querySelectorAll(`[data-${attr.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}]`)) {
      el.setAttribute(name, t(el.dataset[attr]));
    }
  }
}
