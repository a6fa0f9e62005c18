console.log("a log line is not an error");
console.error("boom from a static script", 42);
