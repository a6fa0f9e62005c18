document.getElementById("later").addEventListener("click", function () {
  var p = document.createElement("p");
  p.id = "clicked";
  p.textContent = "clicked";
  document.body.appendChild(p);
  setTimeout(function () { console.warn("warned after a click"); }, 50);
});
